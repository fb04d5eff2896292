"""refstream.deploy"""
