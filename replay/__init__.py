"""refstream.replay"""
