"""refstream.tools"""
