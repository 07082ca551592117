"""The operator's names, apart from the manifests so that `gk` can show them without building any."""

NAME = "gamekeeper-operator"
DEFAULT_NAMESPACE = "gamekeeper-system"
