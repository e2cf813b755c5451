from django.contrib import admin

from .models import ActionType, Agent, AgentKey, BehaviourVersion, Grant

admin.site.site_header = "aispm administration"
admin.site.site_title = "aispm admin"
admin.site.index_title = "Records"


class ReadOnlyAdminMixin:
    """Admin views these records but never writes them.

    Every change to them goes through a service that also writes the audit
    trail (the aispm screens, the API, apply_governance or issue_agent_key), so
    the admin offers no add, change or delete.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class GrantInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Grant
    fields = ["action_type", "constraint", "limit_per_hour", "updated_at"]
    extra = 0
    show_change_link = True


class AgentKeyInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AgentKey
    fields = ["prefix", "label", "created_at", "expires_at", "revoked_at", "last_used_at"]
    extra = 0
    show_change_link = True


@admin.register(ActionType)
class ActionTypeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "key",
        "name",
        "connector_type",
        "irreversible",
        "effective_risk",
        "default_outcome",
        "updated_at",
    ]
    list_filter = ["connector_type", "irreversible", "risk", "default_outcome"]
    search_fields = ["key", "name", "summary_template"]
    # The connector secret is never shown, not even encrypted; only whether one is set.
    exclude = ["connector_secret_encrypted"]
    fields = [
        "key",
        "name",
        "summary_template",
        "params_schema",
        "irreversible",
        "risk",
        "default_outcome",
        "connector_type",
        "connector_config",
        "has_connector_secret",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["has_connector_secret"]

    @admin.display(description="Risk")
    def effective_risk(self, obj):
        return obj.effective_risk

    @admin.display(boolean=True, description="Connector secret set")
    def has_connector_secret(self, obj):
        return bool(obj.connector_secret_encrypted)


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["slug", "name", "status", "owner", "behaviour", "created_at"]
    list_filter = ["status"]
    search_fields = ["slug", "name", "owner__username"]
    list_select_related = ["owner", "active_behaviour"]
    fields = [
        "id",
        "slug",
        "name",
        "owner",
        "status",
        "suspended_reason",
        "callback_url",
        "active_behaviour",
        "behaviour_activated_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["id"]
    inlines = [GrantInline, AgentKeyInline]

    @admin.display(description="Behaviour", ordering="active_behaviour__number")
    def behaviour(self, obj):
        return f"v{obj.active_behaviour.number}" if obj.active_behaviour else "—"


@admin.register(AgentKey)
class AgentKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "shown_prefix",
        "agent",
        "label",
        "usable",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "expires_at", "created_at"]
    search_fields = ["prefix", "label", "agent__slug"]
    list_select_related = ["agent"]
    # key_hash is left out on purpose: only the prefix identifies a key to people.
    fields = [
        "agent",
        "shown_prefix",
        "label",
        "created_at",
        "created_by",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "last_used_ip",
    ]
    readonly_fields = ["shown_prefix"]

    @admin.display(description="Key", ordering="prefix")
    def shown_prefix(self, obj):
        return f"{obj.prefix}…"

    @admin.display(boolean=True, description="Usable")
    def usable(self, obj):
        return obj.is_usable()


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["agent", "action_type", "constraint", "limit_per_hour", "updated_at"]
    list_filter = ["action_type"]
    search_fields = ["agent__slug", "action_type__key", "constraint"]
    list_select_related = ["agent", "action_type"]


@admin.register(BehaviourVersion)
class BehaviourVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["agent", "number", "is_active", "short_hash", "created_by", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["agent__slug", "note", "content_hash"]
    list_select_related = ["agent", "created_by"]
    fields = [
        "agent",
        "number",
        "is_active",
        "instructions",
        "settings",
        "policy",
        "note",
        "content_hash",
        "created_by",
        "created_at",
    ]
    readonly_fields = ["is_active"]

    @admin.display(boolean=True, description="Active")
    def is_active(self, obj):
        return obj.agent.active_behaviour_id == obj.pk

    @admin.display(description="Content hash", ordering="content_hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]
