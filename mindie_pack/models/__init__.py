"""mindie_pack.models"""
