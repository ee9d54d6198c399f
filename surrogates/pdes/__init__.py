"""pdes"""
