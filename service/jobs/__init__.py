"""Jobs: content keys, the result cache, the job store and the executors."""
