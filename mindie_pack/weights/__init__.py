"""mindie_pack.weights"""
