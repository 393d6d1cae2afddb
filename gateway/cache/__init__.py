"""Semantic cache: exact, normalised and embedding-similarity answers to repeated requests.

`request` turns a request of each route into what a lookup needs (scope, text, context,
eligibility), `keys` scopes and keys it, `embedder` embeds it (MiniLM), `index` and `store`
hold the vectors and entries, `verify` and `roles` veto false semantic hits, `learning` and
`rates` decide semantic hits under an operator-set error bound, `equivalence` and
`comparator` compare answers for it, `cache.SemanticCache` combines the phases, `log` shares
entries and learned state between replicas through the database, `service` is one replica,
`precache` suggests follow-ups to answer ahead, `replay` evaluates the cache on recorded
traffic, and `lookup` is the plain data that travels between the API and a replica.
Nothing is imported here, so that importing the configuration never loads FAISS or torch.
"""
