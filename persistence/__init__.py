"""refstream.persistence"""
