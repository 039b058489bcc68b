"""mindie_pack.emulator"""
