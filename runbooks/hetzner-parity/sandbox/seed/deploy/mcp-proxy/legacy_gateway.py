# Left over from the API-gateway setup: not in the local checkout any more.
GATEWAY_HEADER = "X-User-Email"
