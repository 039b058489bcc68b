"""mindie_pack.build"""
