"""Forms of the deployment pages (parsed here, acted on by the services)."""

from django import forms


class RedeployForm(forms.Form):
    version = forms.IntegerField(min_value=1, required=False, help_text="Leave empty to follow the alias.")
    alias = forms.CharField(max_length=255, required=False)

    def clean(self):
        data = super().clean()
        if data.get("version") and data.get("alias"):
            raise forms.ValidationError("Give a version or an alias, not both.")
        return data
