"""mindie_pack.runtime"""
