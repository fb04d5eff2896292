"""refstream.rewards"""
