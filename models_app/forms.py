"""HTML forms of the catalog UI."""

from django import forms

from models_app.choices import Stage, TeamRole, TokenScope


class AccessTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'CI pipeline'.")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple, initial=[TokenScope.READ]
    )
    expires_in_days = forms.IntegerField(min_value=1, initial=90, label="Expires in (days)")


class PromotionRequestForm(forms.Form):
    target_stage = forms.ChoiceField(choices=Stage.choices, label="Move to")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000)
    alias = forms.CharField(
        required=False, max_length=255, help_text="Optional: point this alias at it when applied."
    )


class DecisionForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000)


class PolicyForm(forms.Form):
    staging_checks = forms.CharField(required=False, help_text="Comma-separated check names.")
    production_checks = forms.CharField(required=False, help_text="Comma-separated check names.")
    production_approvals = forms.IntegerField(min_value=0, max_value=10)
    staging_approvals = forms.IntegerField(min_value=0, max_value=10)
    allow_self_approval = forms.BooleanField(required=False, help_text="Off means four eyes.")
    on_new_production = forms.ChoiceField(
        choices=[("archive", "Archive the previous one"), ("none", "Move it back to experimentation")]
    )
    protected_aliases = forms.CharField(required=False, help_text="Comma-separated alias names.")

    @staticmethod
    def _names(value: str) -> list[str]:
        return [n.strip() for n in value.split(",") if n.strip()]

    def to_policy(self) -> dict:
        data = self.cleaned_data
        return {
            "required_checks": {
                "staging": self._names(data["staging_checks"]),
                "production": self._names(data["production_checks"]),
            },
            "production_approvals": data["production_approvals"],
            "staging_approvals": data["staging_approvals"],
            "allow_self_approval": data["allow_self_approval"],
            "on_new_production": data["on_new_production"],
            "protected_aliases": self._names(data["protected_aliases"]),
        }


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=150, label="New team")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=TeamRole.choices)


class ModelCardForm(forms.Form):
    card = forms.CharField(
        label="Model card (Markdown)",
        widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "true"}),
        required=False,
        max_length=100_000,
        strip=False,
        help_text="Headings with #, lists with -, tables with |. HTML is shown as text.",
    )


class WebhookCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What receives the events, e.g. 'Slack #ml-alerts'.")
    url = forms.URLField(
        max_length=2000, label="URL", assume_scheme="https", help_text="A public https:// address."
    )
    events = forms.CharField(
        max_length=2000,
        initial="*",
        help_text="Comma-separated event types, such as version.ready, promotion.applied; * for all.",
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput,
        help_text="Optional: leave empty to have one generated (shown once).",
    )

    def clean_events(self) -> list[str]:
        return [e.strip() for e in self.cleaned_data["events"].split(",") if e.strip()]
