"""Cost and budgets: what each request cost (`pricing`) and who may spend how much
(`budgets`). Plain async Python over the gateway's `Database`; no Ray."""
