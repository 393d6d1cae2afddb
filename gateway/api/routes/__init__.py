"""The public routes: each module an `APIRouter` over the stages it uses."""
