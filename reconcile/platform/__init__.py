"""The platform: the API client, tokens and credentials, retries, and the rate and concurrency controllers."""

from ._auth import Reply, Token, TokenProvider, jwt_claims, jwt_expiry, refusal_fix
from ._client import USER_AGENT, Outcome, PlatformClient, post, server_message
from ._credentials import FEDERATED_AUDIENCE, FederatedCredential
from ._retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_from_headers

__all__ = [
    "FEDERATED_AUDIENCE",
    "RETRYABLE_STATUSES",
    "USER_AGENT",
    "FederatedCredential",
    "Outcome",
    "PlatformClient",
    "Reply",
    "RetryPolicy",
    "Token",
    "TokenProvider",
    "jwt_claims",
    "jwt_expiry",
    "post",
    "refusal_fix",
    "retry_after_from_headers",
    "server_message",
]
