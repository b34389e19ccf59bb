"""Networks: encoders (timm, offline weights), CAAAv2 annotators, Web-IML, BoxPromptIML."""
