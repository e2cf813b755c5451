from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of the role map as of this migration; later changes add migrations.
ROLE_PERMISSIONS = {
    "Reviewers": [
        "approvals.review_decision",
        "approvals.view_decision",
        "approvals.view_review",
        "agents.view_agent",
        "agents.view_actiontype",
    ],
    "Agent admins": [
        "agents.manage_agents",
        "agents.view_agent",
        "agents.add_agent",
        "agents.change_agent",
        "agents.view_agentkey",
        "agents.view_actiontype",
        "agents.add_actiontype",
        "agents.change_actiontype",
        "agents.view_grant",
        "agents.add_grant",
        "agents.change_grant",
        "agents.delete_grant",
        "agents.view_behaviourversion",
        "approvals.view_decision",
    ],
    "Auditors": [
        "audit.export_auditevent",
        "audit.view_auditevent",
        "approvals.view_decision",
        "approvals.view_review",
        "agents.view_agent",
        "agents.view_agentkey",
        "agents.view_actiontype",
        "agents.view_grant",
        "agents.view_behaviourversion",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0001_initial"),
        ("agents", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
