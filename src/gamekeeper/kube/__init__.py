"""Kubernetes mode: the embedded controllers run unchanged as an operator against the Kubernetes API.

Only the adapters differ from embedded mode: `KubeStore` (the Store port over the API, with a watch-and-list
cache per kind), `KubeExecRuntime` (the Runtime port: exec through `pods/exec`), the PodProbeMarker
reconciler (probe path a, when OpenKruise is installed), Lease-based leader election, and the manifests
(`deploy/`). See docs/kubernetes.md.
"""
