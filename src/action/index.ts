import { runMain } from './main'
import { runPost } from './post'
import { stepState } from './state'

/** action.yml runs the same file for both phases; the main phase leaves a state flag for the post phase. */
export function start(): void {
  if (stepState.isPost()) {
    void runPost()
  } else {
    stepState.markMainRan()
    void runMain()
  }
}
