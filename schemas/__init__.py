"""refstream.schemas"""
