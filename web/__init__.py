"""The HTTP edge (`refstream serve`): issuing referral codes, links and QR codes, click
tracking, a referrer's status page, and the reward webhooks' delivery worker."""
