"""Kubernetes plumbing shared by the KubernetesAgent and the Kubernetes environments.

``client.py`` makes the API client (in-cluster, or a kubeconfig) and explains the API's
errors; ``jobs.py`` reads and checks job specs and makes the Job a flow run runs in. Like
``headwater.containers`` for Docker, it imports its SDK (the ``kubernetes`` extra) only when used.
"""
