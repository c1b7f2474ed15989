"""kybern: a Kubernetes-compatible container platform whose every extension point is the real
Kubernetes interface. The package is layered (see `.importlinter`): `api` (pure object logic),
`storage` (revisioned key-value backends), `client`, `apiserver` (the REST API), and `cli`."""

__version__ = "0.1.0"
