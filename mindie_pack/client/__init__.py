"""mindie_pack.client"""
