"""The client library every controller-like component uses: an async REST client (`rest`),
informers with indexed caches (`informer`), a work queue with client-go's contract
(`workqueue`), a reconcile loop runner (`reconcile`), Lease-based leader election
(`leaderelection`) and the HTTP upgrade plumbing streaming proxies share (`upgrade`)."""
