"""The grafana.ini settings this project sets, as Grafana documents them.

The Grafana chart's values.yaml (tests/reference/charts/grafana-12.11.1.keys.json) defines only
``grafana.ini.server.domain`` and a few paths; the auth sections are documented by Grafana
itself. These are the keys of those sections in grafana/grafana ``conf/defaults.ini``
(read through the search tool, stored versions 002060fdada8 and a newer one that adds
auto_login, use_pkce, skip_org_role_sync), plus ``org_mapping``, which Grafana's Entra ID
documentation lists for ``[auth.azuread]`` (group ID:org:role) but defaults.ini leaves out.
``[azure] workload_identity_enabled`` is in Grafana's configuration reference (``[azure]``) and
its Azure Monitor data source documentation (workload identity; Grafana 12).
No copy of Grafana's defaults.ini is in ../shared/reference, so this list is the reference.
"""

from __future__ import annotations

DOCUMENTED: dict[str, set[str]] = {
    "server": {"protocol", "http_addr", "http_port", "domain", "enforce_domain", "root_url", "serve_from_sub_path"},
    "auth": {
        "login_cookie_name",
        "disable_login_form",
        "disable_signout_menu",
        "signout_redirect_url",
        "oauth_auto_login",
        "oauth_allow_insecure_email_lookup",
        "azure_auth_enabled",
    },
    "auth.basic": {"enabled"},
    "azure": {
        "cloud",
        "managed_identity_enabled",
        "managed_identity_client_id",
        "workload_identity_enabled",
        "workload_identity_tenant_id",
        "workload_identity_client_id",
        "workload_identity_token_file",
        "user_identity_enabled",
        "forward_settings_to_plugins",
    },
    "auth.anonymous": {"enabled", "org_name", "org_role", "hide_version"},
    "auth.azuread": {
        "name",
        "icon",
        "enabled",
        "allow_sign_up",
        "auto_login",
        "client_authentication",
        "client_id",
        "client_secret",
        "managed_identity_client_id",
        "federated_credential_audience",
        "scopes",
        "auth_url",
        "token_url",
        "signout_redirect_url",
        "allowed_domains",
        "allowed_groups",
        "allowed_organizations",
        "org_mapping",
        "role_attribute_strict",
        "allow_assign_grafana_admin",
        "force_use_graph_api",
        "tls_skip_verify_insecure",
        "tls_client_cert",
        "tls_client_key",
        "tls_client_ca",
        "use_pkce",
        "skip_org_role_sync",
        "use_refresh_token",
    },
    "users": {"allow_sign_up", "allow_org_create", "auto_assign_org", "auto_assign_org_id", "auto_assign_org_role"},
}


def unknown(ini: dict) -> list[str]:
    """Sections or keys of a grafana.ini (as Helm values) that Grafana does not document."""
    bad = []
    for section, keys in ini.items():
        if section not in DOCUMENTED:
            bad.append(section)
            continue
        bad += [f"{section}.{k}" for k in keys if k not in DOCUMENTED[section]]
    return bad
