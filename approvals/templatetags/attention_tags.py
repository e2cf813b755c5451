from django import template

from approvals import attention

register = template.Library()


@register.simple_tag
def viewed_token(decision) -> str:
    """A signed 'rendered at' for the approve form, to measure time on screen."""
    return attention.viewed_token(decision)
