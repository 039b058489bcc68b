"""mindie_pack.mindie"""
