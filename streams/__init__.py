"""refstream.streams"""
