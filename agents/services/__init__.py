"""The agents domain's writes, one module per area. Each service records its audit
event in the same transaction. Import from here: the modules are an implementation
detail."""

from ._common import ActionTypeApplied, AgentsRefusal, Applied
from .alerts import alert_acknowledge, alert_raise
from .anomalies import address_seen, anomaly_rules_set, new_ip_respond
from .behaviour import behaviour_content_hash, behaviour_version_activate, behaviour_version_create
from .grants import grant_apply, grant_remove
from .keys import IssuedKey, agent_key_issue, agent_key_revoke, agent_key_rotate, key_age_alerts
from .kill_switch import agent_force_review, agent_resume, agent_suspend, global_stop_set
from .registry import action_type_apply, agent_apply, agent_callback_secret_ensure

__all__ = [
    "ActionTypeApplied",
    "AgentsRefusal",
    "Applied",
    "IssuedKey",
    "action_type_apply",
    "address_seen",
    "agent_apply",
    "agent_callback_secret_ensure",
    "agent_force_review",
    "agent_key_issue",
    "agent_key_revoke",
    "agent_key_rotate",
    "agent_resume",
    "agent_suspend",
    "alert_acknowledge",
    "alert_raise",
    "anomaly_rules_set",
    "behaviour_content_hash",
    "behaviour_version_activate",
    "behaviour_version_create",
    "global_stop_set",
    "grant_apply",
    "grant_remove",
    "key_age_alerts",
    "new_ip_respond",
]
