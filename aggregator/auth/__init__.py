"""HQ area: auth — users, departments, roles, data scopes, sessions, edge tokens, audit log.

Modules, one concern each:

- ``access``     what views use: ``login_required``, ``edge_required``, ``audit``,
                 ``issue_edge_token``, ``scope_department_ids`` / ``scope_filter``
- ``model``      ``User`` (``g.user``), ``ROLES``, loading a user with roles and scope
- ``directory``  creating and changing users and departments (views, CLI and tests share it)
- ``login``      password check with lock-out; ``passwords`` argon2id hashing
- ``sessions``   server-side sessions behind the signed cookie (expiry, revocation, CSRF token)
- ``tokens``     edge bearer tokens (SHA-256 at rest); ``audit_log`` the append-only log
- ``views``      ``/api/v1/auth/…``; ``schema`` migration v2

Security decisions, in short: passwords are argon2id; a session cookie carries only a random id
whose hash is the ``sessions`` row, so sign-out, a password change or deactivation really end it;
sessions expire after 30 min idle and 12 h in all (``CC_HQ_SESSION_IDLE_S``/``_MAX_S``); each
session has its own CSRF token, required in ``X-CSRF-Token`` on every unsafe request made with the
cookie; bearer-token (edge) requests need none. Five wrong passwords in a row lock an account for
15 min (``CC_HQ_LOGIN_MAX_FAILURES``/``_LOCKOUT_S``); every refusal answers with the same
generic error and is audited with its real reason. The cookie is HttpOnly, SameSite=Lax, and
Secure with ``CC_HQ_SECURE_COOKIES=1`` (set it behind HTTPS).
"""
