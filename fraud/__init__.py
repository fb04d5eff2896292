"""refstream.fraud"""
