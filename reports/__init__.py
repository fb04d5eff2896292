"""refstream.reports"""
