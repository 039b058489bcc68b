"""Kubernetes manifests for a MindIE deployment (`mindie-pack k8s render`), and applying them (`--apply`)."""
