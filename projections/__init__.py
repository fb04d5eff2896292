"""refstream.projections"""
