"""HTML forms of the catalog UI."""

from django import forms

from models_app.choices import TokenScope


class AccessTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'CI pipeline'.")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple, initial=[TokenScope.READ]
    )
    expires_in_days = forms.IntegerField(min_value=1, initial=90, label="Expires in (days)")
