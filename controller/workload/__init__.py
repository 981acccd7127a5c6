"""Clients and Node informers for workload clusters, reached through ``<cluster>-kubeconfig``."""
