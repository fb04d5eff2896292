"""Deployment: the local Kafka launcher (KRaft, from the Maven jars) and its TLS/SCRAM setup,
topic specs rendered to YAML, ACLs as code, compose and Kubernetes manifests, Prometheus, Grafana.
"""
