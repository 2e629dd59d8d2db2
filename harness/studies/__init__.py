"""The experiments that each answer one question with a setup of their own: the peer
slow-read client, the detector's cost, the release's cost, the query cost, the package matrix."""
