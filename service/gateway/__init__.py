"""HTTP gateway: routes, auth, schemas and error mapping; delegates to the data plane."""
