from django.contrib import admin

from agents.admin import ReadOnlyAdminMixin

from .models import Decision, Review


class ReviewInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Review
    fields = ["reviewer", "verdict", "comment", "tags", "created_at"]
    extra = 0
    show_change_link = True


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "short_id",
        "action_type",
        "agent",
        "status",
        "risk",
        "approval",
        "required_approvals",
        "created_at",
        "expires_at",
    ]
    list_filter = ["status", "risk", "policy_outcome", "approval", "action_type"]
    search_fields = ["id", "summary", "external_ref", "idempotency_key", "agent__slug"]
    list_select_related = ["agent", "action_type"]
    date_hierarchy = "created_at"
    readonly_fields = ["id"]
    fieldsets = [
        (None, {"fields": ["id", "status", "summary", "agent", "action_type", "key"]}),
        (
            "What the agent asked",
            {
                "fields": [
                    "params",
                    "reasoning",
                    "evidence",
                    "confidence",
                    "idempotency_key",
                    "request_hash",
                    "external_ref",
                ]
            },
        ),
        (
            "Policy",
            {
                "fields": [
                    "policy_outcome",
                    "policy_rule",
                    "policy_explanation",
                    "risk",
                    "bulk_allowed",
                    "required_approvals",
                    "behaviour_version",
                ]
            },
        ),
        (
            "Outcome",
            {
                "fields": [
                    "approval",
                    "approved_params",
                    "decided_at",
                    "decided_by",
                    "status_reason",
                    "expires_at",
                ]
            },
        ),
        ("Release", {"fields": ["release_attempts", "release_result", "released_at"]}),
        ("Timestamps", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ReviewInline]

    @admin.display(description="Decision", ordering="id")
    def short_id(self, obj):
        return str(obj.id)[:8]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["decision", "reviewer", "verdict", "created_at"]
    list_filter = ["verdict", "created_at"]
    search_fields = ["reviewer__username", "comment", "decision__id"]
    list_select_related = ["decision__action_type", "reviewer"]
    date_hierarchy = "created_at"
