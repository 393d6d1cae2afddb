"""Stored responses of the Responses API (`/v1/responses`): what `previous_response_id`,
retrieval and deletion read, kept per caller in the gateway's database."""
