"""Training of the jailbreak classifier (`gateway.policy.classifier`): labelled prompt
sources (`sources`), the fit itself (`fit`) and the command that ties them together
(`python -m gateway.policy.training`, see `__main__`). Nothing here runs in the gateway."""
