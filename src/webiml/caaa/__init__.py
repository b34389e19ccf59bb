"""CAAAv2: pair classifier, DASS (SPG), Corr-DINO-lite (SDG), annotation and QES."""
