"""The Kubernetes REST API server: routing, decoding, the generic resource store (defaulting,
validation, metadata, optimistic concurrency, graceful deletion), the watch cache, discovery,
authentication and CRD serving. Built on `kybern.api` and `kybern.storage`."""
