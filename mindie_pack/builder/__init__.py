"""mindie_pack.builder"""
