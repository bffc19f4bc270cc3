"""Model providers: one narrow adapter interface (:mod:`.base`), the endpoint configuration
the adapters are built from (:mod:`.config`), their options models (:mod:`.options`), the
registry that finds the adapter of a ``kind`` (:mod:`.registry`, open to other packages
through the ``roundtable.providers`` entry point) and the client that retries, limits,
prices and logs every call (:mod:`.client`)."""
