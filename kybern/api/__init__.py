"""Pure Kubernetes object logic: no I/O. Errors as `Status`, the resource registry, validation,
defaulting, selectors and patches. Everything above (storage, apiserver, client) builds on it."""
