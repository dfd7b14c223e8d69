"""Who may do what: roles, principals and their permissions, local users and sign-in."""
