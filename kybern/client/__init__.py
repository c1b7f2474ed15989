"""The client library every controller-like component uses: an async REST client (`rest`),
informers with indexed caches (`informer`), a work queue with client-go's contract
(`workqueue`), a reconcile loop runner (`reconcile`) and Lease-based leader election
(`leaderelection`)."""
