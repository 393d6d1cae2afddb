"""Semantic cache: exact, normalised and embedding-similarity answers to repeated requests.

`keys` scopes and keys a request, `embedder` embeds it (MiniLM), `index` and `store` hold the
vectors and entries, `verify` rejects false semantic hits, `cache.SemanticCache` combines the
four phases, `log` shares entries between replicas through the database, `service` is one
replica, and `lookup` is the plain data that travels between the API and a replica.
Nothing is imported here, so that importing the configuration never loads FAISS or torch.
"""
