import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from agents.models import ActionType, Agent, BehaviourVersion, Grant
from aispm_site import roles
from approvals.models import Decision


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))


def reviewer(**kwargs):
    return UserFactory(groups=[roles.REVIEWERS], **kwargs)


def agent_admin(**kwargs):
    return UserFactory(groups=[roles.AGENT_ADMINS], **kwargs)


def auditor(**kwargs):
    return UserFactory(groups=[roles.AUDITORS], **kwargs)


class ActionTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActionType
        django_get_or_create = ["key"]

    key = factory.Sequence(lambda n: f"thing{n}.do")
    name = factory.LazyAttribute(lambda a: a.key.replace(".", " ").title())
    summary_template = "Do {what}"
    params_schema = factory.LazyFunction(
        lambda: {
            "type": "object",
            "required": ["what"],
            "properties": {"what": {"type": "string"}},
        }
    )


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda a: a.slug.replace("-", " ").title())


class BehaviourVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BehaviourVersion

    agent = factory.SubFactory(AgentFactory)
    number = factory.Sequence(lambda n: n + 1)
    instructions = "Be careful."
    content_hash = factory.Sequence(lambda n: f"{n:064x}")


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)
    params = factory.LazyFunction(lambda: {"what": "the thing"})
    reasoning = "Because the evidence says so."
    summary = "Do the thing"
    policy_outcome = "review"
